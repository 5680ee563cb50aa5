"""Interop with other libraries: diffusers pipelines in and out (see :mod:`lab.interop.diffusers`)."""
from lab.interop.diffusers import DiffusersUNet, export_pipeline, flow_time, load_diffusers_teacher

__all__ = ["DiffusersUNet", "export_pipeline", "flow_time", "load_diffusers_teacher"]
