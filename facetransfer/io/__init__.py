"""Files: atomic writes, filesystem faults, images on disk and checkpoints (read, write, digest, info)."""
