"""Dashboard widgets, one per module; each exposes intent-named methods (``add_points``, ``show_state``...)."""
from .event_log import EventLog
from .log_pane import LogPane
from .loss_plot import LossPlot
from .population import PopulationView
from .psnr_plot import PsnrPlot
from .run_status import RunStatus
from .runs_table import RunsTable
from .sample_patches import SamplePatches
from .system_pane import SystemPane
from .trials_table import TrialsTable
from .zoom_view import ZoomView

__all__ = ["EventLog", "LogPane", "LossPlot", "PopulationView", "PsnrPlot", "RunStatus", "RunsTable", "SamplePatches",
           "SystemPane", "TrialsTable", "ZoomView"]
