"""Transports move frames; they never look inside envelopes.

`relay_wire` is the sans-I/O vocabulary spoken with a relay (shared by native
and browser agents); the native shells (`websocket`, `shm`) and the browser
bridges carry its bytes.
"""
