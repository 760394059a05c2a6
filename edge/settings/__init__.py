"""The configuration's sections, one module each: pydantic models and the checks they run.

Nothing here imports the runtime (actuators, web, mqtt, pipeline, zones' frame code...):
only pydantic, the standard library, numpy and edge.errors / edge.types. Every section
derives from :class:`edge.settings.base._Section` (unknown keys and nan/inf refused).
edge/config.py puts the sections together in ``Config`` and re-exports each under its
old name; the feature modules import theirs from here.
"""
