"""aidrec: the command line and settings that tie features, training and serving together."""
