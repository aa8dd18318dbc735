"""Object storage (S3-compatible or a local folder), the streaming verification of images, and
the copy of a provider's output into the store. Imports ``core`` only."""
