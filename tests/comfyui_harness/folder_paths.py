"""Mirrors folder_paths.py: the user directory (set by --user-directory)."""
import os

base_path = os.path.dirname(os.path.abspath(__file__))
user_directory = os.path.join(base_path, "user")


def get_user_directory():
    return user_directory


def set_user_directory(path):
    global user_directory
    user_directory = path
