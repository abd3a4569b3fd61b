"""asyncio transport: one :class:`Channel` per TCP connection, the TC's listener and the client."""
