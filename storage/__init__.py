"""bai storage proxy: vfolder volumes on fs / S3 / Azure / GCS backends.

``python -m bai.storage serve`` runs the manager-facing gRPC ``StorageService`` and the
client-facing HTTP transfer endpoint (tus.io uploads, ranged downloads).
"""
