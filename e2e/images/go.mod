module portico.invalid/e2e/images

go 1.24
