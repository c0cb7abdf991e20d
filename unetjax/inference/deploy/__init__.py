"""Deployment: a pruned run exported as a directory (`export`), or as a StableHLO / ONNX artifact
with its sidecar (`artifact`, `artifact_format`) that `artifact_runner` runs with jax or
onnxruntime alone; and the depth picker's choice of what to serve (`deploy_choice`).

Nothing is imported here, so `unetjax.inference.deploy.artifact_runner` stays light.
"""
