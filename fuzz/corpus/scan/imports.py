import os, sys as s
from os.path import join
from . import x
from ..a.b import (c as d, e)
from a import *
