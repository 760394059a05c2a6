"""doorguard on-device runtime.

One subpackage per stage of the frame's flow: capture/ -> infer/ -> track/ -> decide/ ->
act/; pipeline.py and service.py join them (DESIGN.md section 2 has the map).

Never imports tensorflow. picamera2, gpiozero and the TFLite interpreter are
imported lazily so that this package imports on any laptop.
"""

__version__ = "0.1.0"
