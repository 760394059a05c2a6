"""doorguard on-device runtime.

Never imports tensorflow. picamera2, gpiozero and the TFLite interpreter are
imported lazily so that this package imports on any laptop.
"""

__version__ = "0.1.0"
