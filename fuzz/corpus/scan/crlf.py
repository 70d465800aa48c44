if x:
	if y:
		z = eval
