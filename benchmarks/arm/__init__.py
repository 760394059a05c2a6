"""Emulated Raspberry Pi benchmark (make bench-arm): host driver and guest script."""
