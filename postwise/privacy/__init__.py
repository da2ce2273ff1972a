"""Privacy: the suppression list every sender consults, GDPR export and erasure.

``suppression.suppressed_among`` is the one check a sending path calls before mail goes
out; ``export.export_contact`` and ``erasure.erase_contact`` answer a person's access and
erasure requests. Erasure keeps only a keyed hash of the address (``hashing.py``) so the
person is never mailed again and the address cannot be read back. See docs/privacy.md.
"""
