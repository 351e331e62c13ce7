"""What the tasks measure: text (captions, VQA), audio, pose and forecast metrics."""
