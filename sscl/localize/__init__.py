"""Localization outputs: frame scores to segments, the field's metrics, reports and timelines.

Modules: ``segments`` (frame-index segments, IoU, NMS), ``postprocess`` (decoders),
``metrics`` (mAP at tIoU, frame accuracy, edit, F1@k), ``evaluate`` (a split's metrics, decoder
choice on validation data, trivial baselines), ``report`` (report.json/.md, PNG timelines).
"""
