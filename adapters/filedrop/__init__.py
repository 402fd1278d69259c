"""File drops: inboxes the hub reads (inbox, readers, files, service) and `huitong inbox`."""
