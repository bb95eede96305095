"""Tools around the cache: the command line, the demo, the store inventory and the simulator."""
