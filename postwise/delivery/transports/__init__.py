"""Mail transports: one interface (``base.MailTransport``), one module per way out.

``memory`` is the fake for tests, ``maildir`` the capture of the embedded mode, ``smtp``
a relay (smarthost), ``mx`` direct delivery. ``build_transport`` picks one from settings.
See docs/delivery.md.
"""
