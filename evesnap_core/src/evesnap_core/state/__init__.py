"""Durable state: the reference's snapshot folders and evesnap's own records,
read tolerantly (`stored`), written atomically, one writer at a time (`lock`)."""
