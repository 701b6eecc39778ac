"""The incident daemon: HTTP webhooks and API, the rules watcher, the writer and the pipeline."""
