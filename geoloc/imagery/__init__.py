"""Imagery: importing captured image folders, cropping screenshots, and the capture queue and workers."""
