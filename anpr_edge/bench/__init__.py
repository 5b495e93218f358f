"""Benchmarks of the whole system against the issues' targets (never imported at run time).

Passages on video (issue 5):

- ``sprites``: cars made from real plate photos, and the empty road they drive on;
- ``passage_clips``: the labelled passage video set (deterministic from a seed, cached);
- ``passage_score``: event-level scoring of a run against the ground truth (pure functions);
- ``passage_bench``: runs the real ``run`` loop's per-frame step over the clips and the real traffic clips;
- ``cli``: the ``anpr-edge bench-passages`` subcommand.

MQTT delivery (issue 6): ``broker`` (a throw-away Mosquitto) and ``mqtt_bench`` (``anpr-edge bench-mqtt``).

The daemon on several cameras (issue 7): ``service_bench`` (``anpr-edge bench-service``).

Speed and accuracy side by side (issue 10):

- ``stage_bench``: per-stage latency, end-to-end fps, CPU and peak RSS on one video, with the decode-only
  ceiling (``anpr-edge bench``);
- ``accuracy``: every labelled set, ours with and without the region's plate formats, and the baselines
  on the same inputs (``anpr-edge eval``);
- ``baselines``: RapidOCR and Tesseract behind one line-reader interface (the ``[bench]`` extra);
- ``sizes`` and ``plots``: latency and accuracy per detector input size, with a PNG (``anpr-edge bench-sizes``).
"""
