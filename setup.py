"""ament_python build of n3f_ros (works with colcon on a ROS 2 install and with pip in a venv)."""
from glob import glob

from setuptools import find_packages, setup

package_name = 'n3f_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench', 'bench.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')),
        ('share/' + package_name + '/rviz', glob('rviz/*.rviz')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='n3f_ros developers',
    maintainer_email='n3f-ros@example.com',
    description='Online N3F: distils DINO features into a live 3D feature field; '
                'segmented point clouds and object queries over ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'n3f_node = n3f_ros.ros.node_main:main',
            'n3f = n3f_ros.cli.main:main',
        ],
    },
)
