"""Export of generators for mobile: SavedModel and verified TFLite variants.

`runtime` runs `.tflite` files with LiteRT and imports no TensorFlow (what an
app needs); `tflite` converts and verifies; `exporter` writes an export
directory atomically with its report. Nothing is imported here, so that
importing `tf_gkd.export.runtime` stays free of TensorFlow.
"""
