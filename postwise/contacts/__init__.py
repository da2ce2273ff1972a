"""B2B contact model: contacts, the companies they work for, lists, consent, import/export."""
