"""The networks a derived cell is retrained in from scratch: NAS-Bench-201's macro skeleton
(:mod:`.nb201`) and DARTS's evaluation network (:mod:`.darts`). The training itself is the command
:mod:`applications.nas.commands.train`."""
