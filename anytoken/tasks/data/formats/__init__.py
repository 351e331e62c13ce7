"""Readers of real dataset formats at user-given paths: COCO captions and COCO keypoints."""
