"""Tables the bounce parser and classifier read: how MTAs write, and what they mean."""
