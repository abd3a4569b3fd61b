"""The sample shop and ``pyseata demo``: what ``make run`` shows.

Three services of ``examples/shop`` (order, stock, account), each a process with a database of its
own, call each other over HTTP; a purchase is one global transaction across the three. The demo
starts a TC and the services, drives purchases from concurrent buyers (some fail on purpose),
optionally kills and restarts the TC and services on the way (``--chaos``), waits for recovery,
and checks that stock, orders and money still add up.

* :mod:`pyseata.demo.db`: a service's database from its URL (SQLite, PostgreSQL, MariaDB);
* :mod:`pyseata.demo.host`: runs one service file as a process (ready line, port 0, signals);
* :mod:`pyseata.demo.tc`: ``pyseata server`` that stops when the demo is gone;
* :mod:`pyseata.demo.procs`: starting, killing, restarting and always reaping the children;
* :mod:`pyseata.demo.driver`: the buyers;
* :mod:`pyseata.demo.chaos`: the chaos monkey;
* :mod:`pyseata.demo.checks`: the consistency checks;
* :mod:`pyseata.demo.runner`: all of it in order, and the summary.
"""
