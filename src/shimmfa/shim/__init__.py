"""The shim daemon: thin I/O adapters around `shimmfa.core`."""
