"""``blalm report``: our numbers beside the paper's (tables) and the plots of training and evaluation."""
