"""Where the server keeps files too large for the database (artifacts): its disk or an S3 bucket."""
