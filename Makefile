# The two commands of the README, and the docs site. Each installs what it needs.
.PHONY: demo test docs
demo:
	bash hack/demo.sh
test:
	bash hack/test.sh
docs:
	bash hack/docs.sh
