"""shimmfa: multi-factor authentication for the RS-232 service ports of
legacy medical devices."""

__version__ = "0.1.0"
