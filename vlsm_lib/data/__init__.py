"""Data: on-disk image-text-mask datasets, the P0..P9 prompt generator and MedShapes."""
