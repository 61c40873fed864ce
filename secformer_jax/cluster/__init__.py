"""Multi-process SPU: cluster configs, the party/owner processes over brpc links, and a local launcher."""

from .config import ClusterConfig, ConfigError, load_config, parse_config
from .launch import Interrupted, LaunchError, LocalCluster, launch_inference
from .wire import PeerError

__all__ = ["ClusterConfig", "ConfigError", "Interrupted", "LaunchError", "LocalCluster", "PeerError", "launch_inference", "load_config", "parse_config"]
