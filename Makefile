# The two commands of the README. Both install what they need.
.PHONY: demo test
demo:
	bash hack/demo.sh
test:
	bash hack/test.sh
