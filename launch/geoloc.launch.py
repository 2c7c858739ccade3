"""Start geoloc_node (a lifecycle node), optionally RViz and a bag played in sim time.

    ros2 launch geoloc_node geoloc.launch.py                                   # vehicle: configure + activate
    ros2 launch geoloc_node geoloc.launch.py params_file:=/etc/geoloc/geoloc.yaml rviz:=true
    ros2 launch geoloc_node geoloc.launch.py bag:=/data/drive_0412 rviz:=true  # replay: use_sim_time defaults to true

Arguments:
    params_file   parameter YAML (default: the package's config/geoloc.yaml; set table.path in yours)
    use_sim_time  follow /clock (default: true when a bag is given, else false)
    bag           a rosbag2 folder/file played with `ros2 bag play --clock` ('' = none)
    bag_delay     seconds to wait before playing the bag, so the node is active first (default 5.0)
    rviz          start RViz with config/geoloc.rviz (default false)
    autostart     configure and activate the node at once (default true); false leaves it unconfigured for
                  `ros2 lifecycle set /geoloc_node configure` / `activate`

autostart is the node's own ``autostart`` parameter (the node runs configure then activate itself when it starts),
so `ros2 run` with ``-p autostart:=true`` and this launch file behave the same; the node is still declared as a
launch_ros LifecycleNode, so `ros2 lifecycle` and launch lifecycle events work on it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, TimerAction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("geoloc_node")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    bag = LaunchConfiguration("bag")
    bag_delay = LaunchConfiguration("bag_delay")
    rviz = LaunchConfiguration("rviz")
    autostart = LaunchConfiguration("autostart")
    has_bag = PythonExpression(["'", bag, "' != ''"])

    args = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "geoloc.yaml"),
                              description="parameter YAML of geoloc_node"),
        DeclareLaunchArgument("bag", default_value="", description="rosbag2 to play with --clock ('' = none)"),
        DeclareLaunchArgument("use_sim_time", default_value=PythonExpression(["'true' if '", bag, "' else 'false'"]),
                              description="follow /clock (default: true when a bag is given)"),
        DeclareLaunchArgument("bag_delay", default_value="5.0",
                              description="seconds before the bag starts (the node loads its model first)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/geoloc.rviz"),
        DeclareLaunchArgument("autostart", default_value="true", description="configure and activate at start-up"),
    ]

    node = LifecycleNode(
        package="geoloc_node", executable="geoloc_node", name="geoloc_node", namespace="", output="screen",
        parameters=[params_file, {"use_sim_time": ParameterValue(use_sim_time, value_type=bool),
                                  "autostart": ParameterValue(autostart, value_type=bool)}])

    bag_play = TimerAction(period=bag_delay, condition=IfCondition(has_bag), actions=[
        ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock"], output="screen")])

    rviz_node = Node(package="rviz2", executable="rviz2", name="rviz2", output="log", condition=IfCondition(rviz),
                     arguments=["-d", os.path.join(share, "config", "geoloc.rviz")],
                     parameters=[{"use_sim_time": ParameterValue(use_sim_time, value_type=bool)}])

    return LaunchDescription([*args, node, bag_play, rviz_node])
