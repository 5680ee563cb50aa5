"""The noise process, the Denoiser wrapper, samplers, generators and teacher training."""
from lab.diffusion.analytic import GMMPosterior, analytic_teacher
from lab.diffusion.denoiser import PRED_TYPES, Denoiser
from lab.diffusion.generators import (
    GENERATORS, ConsistencyGenerator, FlowGenerator, Generator, ReflowGenerator, analytic_generator,
    load_generator, make_noise,
)
from lab.diffusion.process import PROCESSES, LinearFlow, Process, VPCosine, get_process
from lab.diffusion.samplers import SampleResult, consistency_sample, ode_sample, straightness, time_grid

__all__ = [
    "GMMPosterior", "analytic_teacher", "PRED_TYPES", "Denoiser", "GENERATORS", "ConsistencyGenerator",
    "FlowGenerator", "Generator", "ReflowGenerator", "analytic_generator", "load_generator", "make_noise",
    "PROCESSES", "LinearFlow", "Process", "VPCosine", "get_process", "SampleResult", "consistency_sample",
    "ode_sample", "straightness", "time_grid",
]
