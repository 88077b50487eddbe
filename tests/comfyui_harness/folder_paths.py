"""Mirrors folder_paths.py: the user directory (--user-directory) and the temp
directory (--temp-directory DIR gives DIR/temp, as main.py does)."""
import os

base_path = os.path.dirname(os.path.abspath(__file__))
user_directory = os.path.join(base_path, "user")


def get_user_directory():
    return user_directory


def set_user_directory(path):
    global user_directory
    user_directory = path


temp_directory = os.path.join(base_path, "temp")


def get_temp_directory():
    return temp_directory


def set_temp_directory(path):
    global temp_directory
    temp_directory = path
