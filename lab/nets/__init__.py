"""Network builders. Every net is built from a JSON-serialisable spec: ``build_net(spec)``."""
from lab.nets.mlp import TimeMLP, build_net, net_spec

__all__ = ["TimeMLP", "build_net", "net_spec"]
