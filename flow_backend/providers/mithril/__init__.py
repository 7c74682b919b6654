"""The Mithril cloud provider: a task is a spot bid; execution, logs and results over SSH."""
