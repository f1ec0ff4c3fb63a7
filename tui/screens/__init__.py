"""The app's screens, one per module."""
from .confirm import ConfirmScreen
from .dashboard import DashboardScreen
from .launcher import LauncherScreen
from .lr_input import LrScreen
from .quit import QuitScreen
from .run_curves import RunCurvesScreen
from .runs import RunsScreen
from .zoom import ZoomScreen

__all__ = ["ConfirmScreen", "DashboardScreen", "LauncherScreen", "LrScreen", "QuitScreen", "RunCurvesScreen",
           "RunsScreen", "ZoomScreen"]
