"""The lab's version (its own module, so a module inside lab can read it without importing ``lab``, which imports everything)."""
__version__ = "0.1.0"
