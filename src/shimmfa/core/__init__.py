"""Pure logic: no files, sockets, clocks or random sources of its own."""
