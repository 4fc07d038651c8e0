"""Transfer of ResNet checkpoints into Detectron2: conversion, models, datasets, fine-tuning."""
