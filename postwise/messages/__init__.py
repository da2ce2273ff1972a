"""Messages: templates, rendering, MIME, headers and DKIM. See docs/messages.md."""
