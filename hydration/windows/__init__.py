"""Windows guests: the offline SYSTEM/SOFTWARE hives and the staged first-boot work."""
