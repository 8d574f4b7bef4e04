"""The reference backend is the oracle: check it against mpmath, in ULPs.

1. EXPECTED: exact values computed once with mpmath (300 bits), kept literally below with the
   snippet that produced them; the reference must be within 0.6 ULP of each (it rounds a
   wider-precision evaluation once; 1 ULP is the contract, 0.6 what it is built to achieve).
2. A seeded sample of inputs (bulk, log-uniform magnitudes, near the inverse's root) compared
   with mpmath evaluated on the spot.
3. Special values, the threshold test in the input precision, exactness without threshold, and
   the absence of floating-point warnings.
"""

from __future__ import annotations

import math
import warnings
from decimal import Decimal, localcontext

import numpy as np
import pytest

from fastsoftplus import _reference as R

PREC = {"float16": (11, -24), "float32": (24, -149), "float64": (53, -1074)}
needs_wide = pytest.mark.skipif(
    not R.WIDE_FLOAT64,
    reason="np.longdouble is plain double here: the float64 reference is a few ULP, not < 1")


def ulp_error(computed: float, expected: Decimal, dtype: str) -> float:
    """|computed - expected| in units of the spacing of ``dtype`` at ``expected``."""
    p, emin = PREC[dtype]
    f = float(expected)
    m, e = math.frexp(abs(f))
    if f != 0 and m == 0.5 and Decimal(abs(f)) > abs(expected):
        e -= 1  # expected lies just below a power of two that it rounded up to
    ulp = 2.0 ** max(e - p, emin)
    with localcontext() as ctx:
        ctx.prec = 80
        return float(abs(Decimal(float(computed)) - expected) / Decimal(ulp))


# (func, dtype, x, beta, exact value) with threshold = inf. Produced by (then pasted):
#   import mpmath as mp
#   import numpy as np
#   mp.mp.prec = 300
#   def exact(func, x, beta, dtype):
#       b = mp.mpf(float(np.dtype(dtype).type(beta)))   # beta rounded to the input precision
#       z = mp.mpf(float(np.dtype(dtype).type(x))) * b
#       if func == "softplus":
#           return mp.log1p(mp.exp(z)) / b
#       if func == "softplus_grad":
#           return 1 / (1 + mp.exp(-z))
#       return mp.log(mp.expm1(z)) / b                   # softplus_inverse, z > 0
#   POINTS = {
#       "softplus": [0.0, -0.0, 5e-324, 1e-300, 1e-20, 1e-8, 0.5, 1.0, 2.0, 10.0, 20.0, 30.0, 36.75,
#                    50.0, 700.0, 1000.0, 1e300, -1e-8, -1.0, -10.0, -30.0, -40.0, -100.0, -700.0,
#                    -744.0],
#       "softplus_grad": [0.0, 1e-300, 1e-8, 0.2736, 1.0, 10.0, 30.0, 36.0, 40.0, -1e-8, -1.0, -10.0,
#                         -30.0, -100.0, -700.0, -744.0],
#       "softplus_inverse": [5e-324, 1e-300, 1e-20, 1e-8, 0.1, 0.5, 0.6931471805599453,
#                            0.6931471805599454, 0.69314718, 0.7, 1.0, 2.0, 10.0, 30.0, 40.0, 1e300],
#   }
#   for dtype in ("float64", "float32"):
#       for func, xs in POINTS.items():
#           for beta in (1.0, 3.0, 0.1):
#               for x in xs:
#                   xd = float(np.dtype(dtype).type(x))
#                   if dtype == "float32" and (abs(x) > 3e38 or (x != 0 and abs(xd) == 0) or x < -100):
#                       continue
#                   v = exact(func, x, beta, dtype)
#                   print(f"    ({func!r}, {dtype!r}, {xd!r}, {beta!r}, {mp.nstr(v, 30, min_fixed=0, max_fixed=0)!r}),")
#
EXPECTED = [
    ('softplus', 'float64', 0.0, 1.0, '6.93147180559945309417232121458e-1'),
    ('softplus', 'float64', -0.0, 1.0, '6.93147180559945309417232121458e-1'),
    ('softplus', 'float64', 5e-324, 1.0, '6.93147180559945309417232121458e-1'),
    ('softplus', 'float64', 1e-300, 1.0, '6.93147180559945309417232121458e-1'),
    ('softplus', 'float64', 1e-20, 1.0, '6.93147180559945309422232121458e-1'),
    ('softplus', 'float64', 1e-08, 1.0, '6.93147185559945321917232226071e-1'),
    ('softplus', 'float64', 0.5, 1.0, '9.74076984180106680872997355081e-1'),
    ('softplus', 'float64', 1.0, 1.0, '1.31326168751822283404899549497'),
    ('softplus', 'float64', 2.0, 1.0, '2.12692801104297249644372680636'),
    ('softplus', 'float64', 10.0, 1.0, '1.00000453988992168646467694878e+1'),
    ('softplus', 'float64', 20.0, 1.0, '2.00000000020611536203143807032e+1'),
    ('softplus', 'float64', 30.0, 1.0, '3.00000000000000935762296883974e+1'),
    ('softplus', 'float64', 36.75, 1.0, '3.67500000000000001095665003326e+1'),
    ('softplus', 'float64', 50.0, 1.0, '5.0000000000000000000000192875e+1'),
    ('softplus', 'float64', 700.0, 1.0, '7.0e+2'),
    ('softplus', 'float64', 1000.0, 1.0, '1.0e+3'),
    ('softplus', 'float64', 1e+300, 1.0, '1.0000000000000000525047602552e+300'),
    ('softplus', 'float64', -1e-08, 1.0, '6.93147175559945321917232016845e-1'),
    ('softplus', 'float64', -1.0, 1.0, '3.13261687518222834048995494968e-1'),
    ('softplus', 'float64', -10.0, 1.0, '4.53988992168646467694878293071e-5'),
    ('softplus', 'float64', -30.0, 1.0, '9.35762296883973677937769742468e-14'),
    ('softplus', 'float64', -40.0, 1.0, '4.24835425529158898630497784363e-18'),
    ('softplus', 'float64', -100.0, 1.0, '3.72007597602083596295969580386e-44'),
    ('softplus', 'float64', -700.0, 1.0, '9.85967654375977085670537294785e-305'),
    ('softplus', 'float64', -744.0, 1.0, '7.67194470417997907394977430442e-324'),
    ('softplus', 'float64', 0.0, 3.0, '2.31049060186648436472410707153e-1'),
    ('softplus', 'float64', -0.0, 3.0, '2.31049060186648436472410707153e-1'),
    ('softplus', 'float64', 5e-324, 3.0, '2.31049060186648436472410707153e-1'),
    ('softplus', 'float64', 1e-300, 3.0, '2.31049060186648436472410707153e-1'),
    ('softplus', 'float64', 1e-20, 3.0, '2.31049060186648436477410707153e-1'),
    ('softplus', 'float64', 1e-08, 3.0, '2.31049065186648473972410811766e-1'),
    ('softplus', 'float64', 0.5, 3.0, '5.67137759327584136499827603019e-1'),
    ('softplus', 'float64', 1.0, 3.0, '1.01619578385791401958630863995'),
    ('softplus', 'float64', 2.0, 3.0, '2.00082522837924348317695322735'),
    ('softplus', 'float64', 10.0, 3.0, '1.00000000000000311920765627991e+1'),
    ('softplus', 'float64', 20.0, 3.0, '2.00000000000000000000000000029e+1'),
    ('softplus', 'float64', 30.0, 3.0, '3.0e+1'),
    ('softplus', 'float64', 36.75, 3.0, '3.675e+1'),
    ('softplus', 'float64', 50.0, 3.0, '5.0e+1'),
    ('softplus', 'float64', 700.0, 3.0, '7.0e+2'),
    ('softplus', 'float64', 1000.0, 3.0, '1.0e+3'),
    ('softplus', 'float64', 1e+300, 3.0, '1.0000000000000000525047602552e+300'),
    ('softplus', 'float64', -1e-08, 3.0, '2.3104905518664847397241060254e-1'),
    ('softplus', 'float64', -1.0, 3.0, '1.61957838579140195863086399516e-2'),
    ('softplus', 'float64', -10.0, 3.0, '3.11920765627991225979256580823e-14'),
    ('softplus', 'float64', -30.0, 3.0, '2.73133754133017181012036940446e-40'),
    ('softplus', 'float64', -40.0, 3.0, '2.55588269124066654414473612509e-53'),
    ('softplus', 'float64', -100.0, 3.0, '1.71606674080400459371828730702e-131'),
    ('softplus', 'float64', -700.0, 3.0, '3.19496973411954846948889355482e-913'),
    ('softplus', 'float64', -744.0, 3.0, '1.5052032148382802620153888822e-970'),
    ('softplus', 'float64', 0.0, 0.1, '6.93147180559945270939834155875'),
    ('softplus', 'float64', -0.0, 0.1, '6.93147180559945270939834155875'),
    ('softplus', 'float64', 5e-324, 0.1, '6.93147180559945270939834155875'),
    ('softplus', 'float64', 1e-300, 0.1, '6.93147180559945270939834155875'),
    ('softplus', 'float64', 1e-20, 0.1, '6.93147180559945270940334155875'),
    ('softplus', 'float64', 1e-08, 0.1, '6.93147181059945271064834166336'),
    ('softplus', 'float64', 0.5, 0.1, '7.18459648013286255691830324436'),
    ('softplus', 'float64', 1.0, 0.1, '7.44396660073570856422003441869'),
    ('softplus', 'float64', 2.0, 0.1, '7.98138869381591801483719866135'),
    ('softplus', 'float64', 10.0, 0.1, '1.31326168751822280173023067017e+1'),
    ('softplus', 'float64', 20.0, 0.1, '2.12692801104297247616362392671e+1'),
    ('softplus', 'float64', 30.0, 0.1, '3.04858735157374204816379164402e+1'),
    ('softplus', 'float64', 36.75, 0.1, '3.70003343793961791926180613235e+1'),
    ('softplus', 'float64', 50.0, 0.1, '5.00671534848911806638600066305e+1'),
    ('softplus', 'float64', 700.0, 0.1, '7.0e+2'),
    ('softplus', 'float64', 1000.0, 0.1, '1.0e+3'),
    ('softplus', 'float64', 1e+300, 0.1, '1.0000000000000000525047602552e+300'),
    ('softplus', 'float64', -1e-08, 0.1, '6.93147180059945271064834145414'),
    ('softplus', 'float64', -1.0, 0.1, '6.44396660073570856422003441869'),
    ('softplus', 'float64', -10.0, 0.1, '3.13261687518222801730230670166'),
    ('softplus', 'float64', -30.0, 0.1, '4.85873515737420481637916440153e-1'),
    ('softplus', 'float64', -40.0, 0.1, '1.81499279178097353537190396745e-1'),
    ('softplus', 'float64', -100.0, 0.1, '4.53988992168646190484631179709e-4'),
    ('softplus', 'float64', -700.0, 0.1, '3.97544973590863113938190309131e-30'),
    ('softplus', 'float64', -744.0, 0.1, '4.88079476753139215950860473173e-32'),
    ('softplus_grad', 'float64', 0.0, 1.0, '5.0e-1'),
    ('softplus_grad', 'float64', 1e-300, 1.0, '5.0e-1'),
    ('softplus_grad', 'float64', 1e-08, 1.0, '5.00000002500000000000000031473e-1'),
    ('softplus_grad', 'float64', 0.2736, 1.0, '5.67976485347650992334839096369e-1'),
    ('softplus_grad', 'float64', 1.0, 1.0, '7.31058578630004879251159241822e-1'),
    ('softplus_grad', 'float64', 10.0, 1.0, '9.99954602131297565605495223767e-1'),
    ('softplus_grad', 'float64', 30.0, 1.0, '9.9999999999990642377031160701e-1'),
    ('softplus_grad', 'float64', 36.0, 1.0, '9.99999999999999768047716975643e-1'),
    ('softplus_grad', 'float64', 40.0, 1.0, '9.99999999999999995751645744708e-1'),
    ('softplus_grad', 'float64', -1e-08, 1.0, '4.99999997499999999999999968527e-1'),
    ('softplus_grad', 'float64', -1.0, 1.0, '2.68941421369995120748840758178e-1'),
    ('softplus_grad', 'float64', -10.0, 1.0, '4.53978687024343945047762327635e-5'),
    ('softplus_grad', 'float64', -30.0, 1.0, '9.35762296883929895383956265328e-14'),
    ('softplus_grad', 'float64', -100.0, 1.0, '3.72007597602083596295969580386e-44'),
    ('softplus_grad', 'float64', -700.0, 1.0, '9.85967654375977085670537294785e-305'),
    ('softplus_grad', 'float64', -744.0, 1.0, '7.67194470417997907394977430442e-324'),
    ('softplus_grad', 'float64', 0.0, 3.0, '5.0e-1'),
    ('softplus_grad', 'float64', 1e-300, 3.0, '5.0e-1'),
    ('softplus_grad', 'float64', 1e-08, 3.0, '5.00000007499999999999999594419e-1'),
    ('softplus_grad', 'float64', 0.2736, 3.0, '6.94406131510591631058263241543e-1'),
    ('softplus_grad', 'float64', 1.0, 3.0, '9.52574126822433219121151848228e-1'),
    ('softplus_grad', 'float64', 10.0, 3.0, '9.9999999999990642377031160701e-1'),
    ('softplus_grad', 'float64', 30.0, 3.0, '1.0'),
    ('softplus_grad', 'float64', 36.0, 3.0, '1.0'),
    ('softplus_grad', 'float64', 40.0, 3.0, '1.0'),
    ('softplus_grad', 'float64', -1e-08, 3.0, '4.99999992500000000000000405581e-1'),
    ('softplus_grad', 'float64', -1.0, 3.0, '4.74258731775667808788481517718e-2'),
    ('softplus_grad', 'float64', -10.0, 3.0, '9.35762296883929895383956265328e-14'),
    ('softplus_grad', 'float64', -30.0, 3.0, '8.19401262399051543036110821338e-40'),
    ('softplus_grad', 'float64', -100.0, 3.0, '5.14820022241201378115486192107e-131'),
    ('softplus_grad', 'float64', -700.0, 3.0, '9.58490920235864540846668066445e-913'),
    ('softplus_grad', 'float64', -744.0, 3.0, '4.51560964451484078604616664659e-970'),
    ('softplus_grad', 'float64', 0.0, 0.1, '5.0e-1'),
    ('softplus_grad', 'float64', 1e-300, 0.1, '5.0e-1'),
    ('softplus_grad', 'float64', 1e-08, 0.1, '5.00000000250000000000000019088e-1'),
    ('softplus_grad', 'float64', 0.2736, 0.1, '5.06839573347265898815215022061e-1'),
    ('softplus_grad', 'float64', 1.0, 0.1, '5.24979187478939987483508290664e-1'),
    ('softplus_grad', 'float64', 10.0, 0.1, '7.3105857863000489016531400186e-1'),
    ('softplus_grad', 'float64', 30.0, 0.1, '9.52574126822433226644577019565e-1'),
    ('softplus_grad', 'float64', 36.0, 0.1, '9.73403006423134149996979263644e-1'),
    ('softplus_grad', 'float64', 40.0, 0.1, '9.82013790037908445895115485088e-1'),
    ('softplus_grad', 'float64', -1e-08, 0.1, '4.99999999749999999999999980912e-1'),
    ('softplus_grad', 'float64', -1.0, 0.1, '4.75020812521060012516491709336e-1'),
    ('softplus_grad', 'float64', -10.0, 0.1, '2.6894142136999510983468599814e-1'),
    ('softplus_grad', 'float64', -30.0, 0.1, '4.74258731775667733554229804345e-2'),
    ('softplus_grad', 'float64', -100.0, 0.1, '4.53978687024343693050407478083e-5'),
    ('softplus_grad', 'float64', -700.0, 0.1, '3.9754497359086313600636945936e-31'),
    ('softplus_grad', 'float64', -744.0, 0.1, '4.88079476753139243044714120089e-33'),
    ('softplus_inverse', 'float64', 5e-324, 1.0, '-7.44440071921381262314107298446e+2'),
    ('softplus_inverse', 'float64', 1e-300, 1.0, '-6.9077552789821370518033834457e+2'),
    ('softplus_inverse', 'float64', 1e-20, 1.0, '-4.60517018598809137352015576395e+1'),
    ('softplus_inverse', 'float64', 1e-08, 1.0, '-1.84206807389523654470547040361e+1'),
    ('softplus_inverse', 'float64', 0.1, 1.0, '-2.2521684610440907505865368096'),
    ('softplus_inverse', 'float64', 0.5, 1.0, '-4.32752129567188571894641000149e-1'),
    ('softplus_inverse', 'float64', 0.6931471805599453, 1.0, '-4.63809362769259928476949217586e-17'),
    ('softplus_inverse', 'float64', 0.6931471805599454, 1.0, '1.75663668648105308060398103613e-16'),
    ('softplus_inverse', 'float64', 0.69314718, 1.0, '-1.11989067137346253442965104223e-9'),
    ('softplus_inverse', 'float64', 0.7, 1.0, '1.36589971916148020918637167011e-2'),
    ('softplus_inverse', 'float64', 1.0, 1.0, '5.41324854612918108978356354933e-1'),
    ('softplus_inverse', 'float64', 2.0, 1.0, '1.8545865421311409430273518499'),
    ('softplus_inverse', 'float64', 10.0, 1.0, '9.99995459903962951079049555364'),
    ('softplus_inverse', 'float64', 30.0, 1.0, '2.99999999999999064237703115939e+1'),
    ('softplus_inverse', 'float64', 40.0, 1.0, '3.99999999999999999957516457447e+1'),
    ('softplus_inverse', 'float64', 1e+300, 1.0, '1.0000000000000000525047602552e+300'),
    ('softplus_inverse', 'float64', 5e-324, 3.0, '-2.47780486544237717540904017736e+2'),
    ('softplus_inverse', 'float64', 1e-300, 3.0, '-2.29892305203181865162981033111e+2'),
    ('softplus_inverse', 'float64', 1e-20, 3.0, '-1.49843631904042680145987708009e+1'),
    ('softplus_inverse', 'float64', 1e-08, 3.0, '-5.77402281342808524077537508553'),
    ('softplus_inverse', 'float64', 0.1, 3.0, '-3.5007520427161553842691274295e-1'),
    ('softplus_inverse', 'float64', 0.5, 3.0, '4.15839180358182001320597816807e-1'),
    ('softplus_inverse', 'float64', 0.6931471805599453, 3.0, '6.48636716351771075198392089571e-1'),
    ('softplus_inverse', 'float64', 0.6931471805599454, 3.0, '6.48636716351771202081023475303e-1'),
    ('softplus_inverse', 'float64', 0.69314718, 3.0, '6.48636715711833575305042809012e-1'),
    ('softplus_inverse', 'float64', 0.7, 3.0, '6.56457109845900121068705645731e-1'),
    ('softplus_inverse', 'float64', 1.0, 3.0, '9.82976939685766137820425419826e-1'),
    ('softplus_inverse', 'float64', 2.0, 3.0, '1.99917272354368015740673405978'),
    ('softplus_inverse', 'float64', 10.0, 3.0, '9.99999999999996880792343719796'),
    ('softplus_inverse', 'float64', 30.0, 3.0, '3.0e+1'),
    ('softplus_inverse', 'float64', 40.0, 3.0, '4.0e+1'),
    ('softplus_inverse', 'float64', 1e+300, 3.0, '1.0000000000000000525047602552e+300'),
    ('softplus_inverse', 'float64', 5e-324, 0.1, '-7.46742657014375266490069574313e+3'),
    ('softplus_inverse', 'float64', 1e-300, 0.1, '-6.93078112991207712335281239464e+3'),
    ('softplus_inverse', 'float64', 1e-20, 0.1, '-4.83542869528749566795107621422e+2'),
    ('softplus_inverse', 'float64', 1e-08, 0.1, '-2.07232658364464099293142004734e+2'),
    ('softplus_inverse', 'float64', 0.1, 0.1, '-4.60016601932489655114123420732e+1'),
    ('softplus_inverse', 'float64', 0.5, 0.1, '-2.97062810905737688125790309474e+1'),
    ('softplus_inverse', 'float64', 0.6931471805599453, 0.1, '-2.63424047380640971945217794685e+1'),
    ('softplus_inverse', 'float64', 0.6931471805599454, 0.1, '-2.63424047380640955366561377094e+1'),
    ('softplus_inverse', 'float64', 0.69314718, 0.1, '-2.63424047464256072187553061092e+1'),
    ('softplus_inverse', 'float64', 0.7, 0.1, '-2.62405587860226845572376437379e+1'),
    ('softplus_inverse', 'float64', 1.0, 0.1, '-2.25216846104409062556607277031e+1'),
    ('softplus_inverse', 'float64', 2.0, 0.1, '-1.50777180097051976914406932844e+1'),
    ('softplus_inverse', 'float64', 10.0, 0.1, '5.41324854612918166746138704627'),
    ('softplus_inverse', 'float64', 30.0, 0.1, '2.94893081905729842502182158142e+1'),
    ('softplus_inverse', 'float64', 40.0, 0.1, '3.98151455317411344463999330151e+1'),
    ('softplus_inverse', 'float64', 1e+300, 0.1, '1.0000000000000000525047602552e+300'),
    ('softplus', 'float32', 0.0, 1.0, '6.93147180559945309417232121458e-1'),
    ('softplus', 'float32', -0.0, 1.0, '6.93147180559945309417232121458e-1'),
    ('softplus', 'float32', 9.999999682655225e-21, 1.0, '6.931471805599453094222321213e-1'),
    ('softplus', 'float32', 9.99999993922529e-09, 1.0, '6.93147185559945291529877114911e-1'),
    ('softplus', 'float32', 0.5, 1.0, '9.74076984180106680872997355081e-1'),
    ('softplus', 'float32', 1.0, 1.0, '1.31326168751822283404899549497'),
    ('softplus', 'float32', 2.0, 1.0, '2.12692801104297249644372680636'),
    ('softplus', 'float32', 10.0, 1.0, '1.00000453988992168646467694878e+1'),
    ('softplus', 'float32', 20.0, 1.0, '2.00000000020611536203143807032e+1'),
    ('softplus', 'float32', 30.0, 1.0, '3.00000000000000935762296883974e+1'),
    ('softplus', 'float32', 36.75, 1.0, '3.67500000000000001095665003326e+1'),
    ('softplus', 'float32', 50.0, 1.0, '5.0000000000000000000000192875e+1'),
    ('softplus', 'float32', 700.0, 1.0, '7.0e+2'),
    ('softplus', 'float32', 1000.0, 1.0, '1.0e+3'),
    ('softplus', 'float32', -9.99999993922529e-09, 1.0, '6.93147175559945352304586824132e-1'),
    ('softplus', 'float32', -1.0, 1.0, '3.13261687518222834048995494968e-1'),
    ('softplus', 'float32', -10.0, 1.0, '4.53988992168646467694878293071e-5'),
    ('softplus', 'float32', -30.0, 1.0, '9.35762296883973677937769742468e-14'),
    ('softplus', 'float32', -40.0, 1.0, '4.24835425529158898630497784363e-18'),
    ('softplus', 'float32', -100.0, 1.0, '3.72007597602083596295969580386e-44'),
    ('softplus', 'float32', 0.0, 3.0, '2.31049060186648436472410707153e-1'),
    ('softplus', 'float32', -0.0, 3.0, '2.31049060186648436472410707153e-1'),
    ('softplus', 'float32', 9.999999682655225e-21, 3.0, '2.31049060186648436477410706994e-1'),
    ('softplus', 'float32', 9.99999993922529e-09, 3.0, '2.31049065186648443585055396732e-1'),
    ('softplus', 'float32', 0.5, 3.0, '5.67137759327584136499827603019e-1'),
    ('softplus', 'float32', 1.0, 3.0, '1.01619578385791401958630863995'),
    ('softplus', 'float32', 2.0, 3.0, '2.00082522837924348317695322735'),
    ('softplus', 'float32', 10.0, 3.0, '1.00000000000000311920765627991e+1'),
    ('softplus', 'float32', 20.0, 3.0, '2.00000000000000000000000000029e+1'),
    ('softplus', 'float32', 30.0, 3.0, '3.0e+1'),
    ('softplus', 'float32', 36.75, 3.0, '3.675e+1'),
    ('softplus', 'float32', 50.0, 3.0, '5.0e+1'),
    ('softplus', 'float32', 700.0, 3.0, '7.0e+2'),
    ('softplus', 'float32', 1000.0, 3.0, '1.0e+3'),
    ('softplus', 'float32', -9.99999993922529e-09, 3.0, '2.31049055186648504359765105953e-1'),
    ('softplus', 'float32', -1.0, 3.0, '1.61957838579140195863086399516e-2'),
    ('softplus', 'float32', -10.0, 3.0, '3.11920765627991225979256580823e-14'),
    ('softplus', 'float32', -30.0, 3.0, '2.73133754133017181012036940446e-40'),
    ('softplus', 'float32', -40.0, 3.0, '2.55588269124066654414473612509e-53'),
    ('softplus', 'float32', -100.0, 3.0, '1.71606674080400459371828730702e-131'),
    ('softplus', 'float32', 0.0, 0.1, '6.93147170231247594742050095697'),
    ('softplus', 'float32', -0.0, 0.1, '6.93147170231247594742050095697'),
    ('softplus', 'float32', 9.999999682655225e-21, 0.1, '6.93147170231247594742550095681'),
    ('softplus', 'float32', 9.99999993922529e-09, 0.1, '6.93147170731247591828314610579'),
    ('softplus', 'float32', 0.5, 0.1, '7.18459637689243737562349857411'),
    ('softplus', 'float32', 1.0, 0.1, '7.44396649763476374425128269416'),
    ('softplus', 'float32', 2.0, 0.1, '7.98138859127029050620778031631'),
    ('softplus', 'float32', 10.0, 0.1, '1.31326167884272061204978714556e+1'),
    ('softplus', 'float32', 20.0, 0.1, '2.12692800559907395996639328026e+1'),
    ('softplus', 'float32', 30.0, 0.1, '3.0485873487296324455638384686e+1'),
    ('softplus', 'float32', 36.75, 0.1, '3.70003343621273195904530630669e+1'),
    ('softplus', 'float32', 50.0, 0.1, '5.00671534789039535333512969548e+1'),
    ('softplus', 'float32', 700.0, 0.1, '7.0e+2'),
    ('softplus', 'float32', 1000.0, 0.1, '1.0e+3'),
    ('softplus', 'float32', -9.99999993922529e-09, 0.1, '6.93147169731247597905785581501'),
    ('softplus', 'float32', -1.0, 0.1, '6.44396649763476374425128269416'),
    ('softplus', 'float32', -10.0, 0.1, '3.13261678842720612049787145556'),
    ('softplus', 'float32', -30.0, 0.1, '4.85873487296324455638384685964e-1'),
    ('softplus', 'float32', -40.0, 0.1, '1.81499265752931345292499586134e-1'),
    ('softplus', 'float32', -100.0, 0.1, '4.53988917755593524734534420409e-4'),
    ('softplus_grad', 'float32', 0.0, 1.0, '5.0e-1'),
    ('softplus_grad', 'float32', 9.99999993922529e-09, 1.0, '5.00000002499999984806322551861e-1'),
    ('softplus_grad', 'float32', 0.2736000120639801, 1.0, '5.67976488307900742978613496152e-1'),
    ('softplus_grad', 'float32', 1.0, 1.0, '7.31058578630004879251159241822e-1'),
    ('softplus_grad', 'float32', 10.0, 1.0, '9.99954602131297565605495223767e-1'),
    ('softplus_grad', 'float32', 30.0, 1.0, '9.9999999999990642377031160701e-1'),
    ('softplus_grad', 'float32', 36.0, 1.0, '9.99999999999999768047716975643e-1'),
    ('softplus_grad', 'float32', 40.0, 1.0, '9.99999999999999995751645744708e-1'),
    ('softplus_grad', 'float32', -9.99999993922529e-09, 1.0, '4.99999997500000015193677448139e-1'),
    ('softplus_grad', 'float32', -1.0, 1.0, '2.68941421369995120748840758178e-1'),
    ('softplus_grad', 'float32', -10.0, 1.0, '4.53978687024343945047762327635e-5'),
    ('softplus_grad', 'float32', -30.0, 1.0, '9.35762296883929895383956265328e-14'),
    ('softplus_grad', 'float32', -100.0, 1.0, '3.72007597602083596295969580386e-44'),
    ('softplus_grad', 'float32', 0.0, 3.0, '5.0e-1'),
    ('softplus_grad', 'float32', 9.99999993922529e-09, 3.0, '5.00000007499999954418967155584e-1'),
    ('softplus_grad', 'float32', 0.2736000120639801, 3.0, '6.94406139190747721924912173856e-1'),
    ('softplus_grad', 'float32', 1.0, 3.0, '9.52574126822433219121151848228e-1'),
    ('softplus_grad', 'float32', 10.0, 3.0, '9.9999999999990642377031160701e-1'),
    ('softplus_grad', 'float32', 30.0, 3.0, '1.0'),
    ('softplus_grad', 'float32', 36.0, 3.0, '1.0'),
    ('softplus_grad', 'float32', 40.0, 3.0, '1.0'),
    ('softplus_grad', 'float32', -9.99999993922529e-09, 3.0, '4.99999992500000045581032844416e-1'),
    ('softplus_grad', 'float32', -1.0, 3.0, '4.74258731775667808788481517718e-2'),
    ('softplus_grad', 'float32', -10.0, 3.0, '9.35762296883929895383956265328e-14'),
    ('softplus_grad', 'float32', -30.0, 3.0, '8.19401262399051543036110821338e-40'),
    ('softplus_grad', 'float32', -100.0, 3.0, '5.14820022241201378115486192107e-131'),
    ('softplus_grad', 'float32', 0.0, 0.1, '5.0e-1'),
    ('softplus_grad', 'float32', 9.99999993922529e-09, 0.1, '5.0000000025000000220592253307e-1'),
    ('softplus_grad', 'float32', 0.2736000120639801, 0.1, '5.06839573750713840882012176951e-1'),
    ('softplus_grad', 'float32', 1.0, 0.1, '5.24979187850539243365133074332e-1'),
    ('softplus_grad', 'float32', 10.0, 0.1, '7.31058581559750979029258292014e-1'),
    ('softplus_grad', 'float32', 30.0, 0.1, '9.52574128841987244812045321473e-1'),
    ('softplus_grad', 'float32', 36.0, 0.1, '9.73403007811960131617268392605e-1'),
    ('softplus_grad', 'float32', 40.0, 0.1, '9.82013791090687741341884658784e-1'),
    ('softplus_grad', 'float32', -9.99999993922529e-09, 0.1, '4.9999999974999999779407746693e-1'),
    ('softplus_grad', 'float32', -1.0, 0.1, '4.75020812149460756634866925668e-1'),
    ('softplus_grad', 'float32', -10.0, 0.1, '2.68941418440249020970741707986e-1'),
    ('softplus_grad', 'float32', -30.0, 0.1, '4.74258711580127551879546785273e-2'),
    ('softplus_grad', 'float32', -100.0, 0.1, '4.539786193793241247037761905e-5'),
    ('softplus_inverse', 'float32', 9.999999682655225e-21, 1.0, '-4.60517018916153916449965808652e+1'),
    ('softplus_inverse', 'float32', 9.99999993922529e-09, 1.0, '-1.84206807450298364877545963699e+1'),
    ('softplus_inverse', 'float32', 0.10000000149011612, 1.0, '-2.25216844538545610109416201997'),
    ('softplus_inverse', 'float32', 0.5, 1.0, '-4.32752129567188571894641000149e-1'),
    ('softplus_inverse', 'float32', 0.6931471824645996, 1.0, '3.80930859628782776164556167872e-9'),
    ('softplus_inverse', 'float32', 0.6931471824645996, 1.0, '3.80930859628782776164556167872e-9'),
    ('softplus_inverse', 'float32', 0.6931471824645996, 1.0, '3.80930859628782776164556167872e-9'),
    ('softplus_inverse', 'float32', 0.699999988079071, 1.0, '1.36589735114777887296332608213e-2'),
    ('softplus_inverse', 'float32', 1.0, 1.0, '5.41324854612918108978356354933e-1'),
    ('softplus_inverse', 'float32', 2.0, 1.0, '1.8545865421311409430273518499'),
    ('softplus_inverse', 'float32', 10.0, 1.0, '9.99995459903962951079049555364'),
    ('softplus_inverse', 'float32', 30.0, 1.0, '2.99999999999999064237703115939e+1'),
    ('softplus_inverse', 'float32', 40.0, 1.0, '3.99999999999999999957516457447e+1'),
    ('softplus_inverse', 'float32', 9.999999682655225e-21, 3.0, '-1.49843632009824273178637785428e+1'),
    ('softplus_inverse', 'float32', 9.99999993922529e-09, 3.0, '-5.77402281545390894126690930468'),
    ('softplus_inverse', 'float32', 0.10000000149011612, 3.0, '-3.50075198522306662498136529204e-1'),
    ('softplus_inverse', 'float32', 0.5, 3.0, '4.15839180358182001320597816807e-1'),
    ('softplus_inverse', 'float32', 0.6931471824645996, 3.0, '6.48636718528518872193672110606e-1'),
    ('softplus_inverse', 'float32', 0.6931471824645996, 3.0, '6.48636718528518872193672110606e-1'),
    ('softplus_inverse', 'float32', 0.6931471824645996, 3.0, '6.48636718528518872193672110606e-1'),
    ('softplus_inverse', 'float32', 0.699999988079071, 3.0, '6.56457096261470442343270629182e-1'),
    ('softplus_inverse', 'float32', 1.0, 3.0, '9.82976939685766137820425419826e-1'),
    ('softplus_inverse', 'float32', 2.0, 3.0, '1.99917272354368015740673405978'),
    ('softplus_inverse', 'float32', 10.0, 3.0, '9.99999999999996880792343719796'),
    ('softplus_inverse', 'float32', 30.0, 3.0, '3.0e+1'),
    ('softplus_inverse', 'float32', 40.0, 3.0, '4.0e+1'),
    ('softplus_inverse', 'float32', 9.999999682655225e-21, 0.1, '-4.8354286249173262433811757964e+2'),
    ('softplus_inverse', 'float32', 9.99999993922529e-09, 0.1, '-2.07232655188220010994014135676e+2'),
    ('softplus_inverse', 'float32', 0.10000000149011612, 0.1, '-4.60016592082550088243705685576e+1'),
    ('softplus_inverse', 'float32', 0.5, 0.1, '-2.97062804951477529835239406681e+1'),
    ('softplus_inverse', 'float32', 0.6931471824645996, 0.1, '-2.63424041628543912442588406217e+1'),
    ('softplus_inverse', 'float32', 0.6931471824645996, 0.1, '-2.63424041628543912442588406217e+1'),
    ('softplus_inverse', 'float32', 0.6931471824645996, 0.1, '-2.63424041628543912442588406217e+1'),
    ('softplus_inverse', 'float32', 0.699999988079071, 0.1, '-2.62405584170490206209015564619e+1'),
    ('softplus_inverse', 'float32', 1.0, 0.1, '-2.2521684118255315607900442094e+1'),
    ('softplus_inverse', 'float32', 2.0, 0.1, '-1.50777176206205518636491593998e+1'),
    ('softplus_inverse', 'float32', 10.0, 0.1, '5.4132487011983877284080689752'),
    ('softplus_inverse', 'float32', 30.0, 0.1, '2.94893082216055856722750300357e+1'),
    ('softplus_inverse', 'float32', 40.0, 0.1, '3.98151455456163334485698732334e+1'),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_expected_values(dtype):
    if dtype == "float64" and not R.WIDE_FLOAT64:
        pytest.skip("np.longdouble is plain double here")
    rows = [r for r in EXPECTED if r[1] == dtype]
    assert len(rows) > 100
    worst = []
    for func, _, x, beta, value in rows:
        got = R.evaluate(func, np.array(x, dtype), beta=beta)
        assert got.dtype == np.dtype(dtype)
        err = ulp_error(float(got), Decimal(value), dtype)
        if err > 0.6:
            worst.append(f"{func}({x!r}, beta={beta}): got {float(got)!r}, exact {value} ({err:.3f} ULP)")
    assert not worst, "\n".join(worst)


# --- sampled comparison with mpmath --------------------------------------------------------------

def _mp_exact(mp, func, x, beta, g=None, dtype="float64"):
    """Exact value (mpmath) of ``func`` at float ``x`` with float ``beta`` (already rounded)."""
    b = mp.mpf(beta)
    z = mp.mpf(x) * b
    if func == "softplus":
        return mp.log1p(mp.exp(z)) / b
    if func == "softplus_grad":
        return 1 / (1 + mp.exp(-z))
    if func == "softplus_backward":  # g * (the derivative rounded to dtype): see _reference
        return mp.mpf(g) * mp.mpf(float(np.dtype(dtype).type(float(1 / (1 + mp.exp(-z))))))
    return mp.log(mp.expm1(z)) / b


def _mp_ulp(mp, v, dtype):
    p, emin = PREC[dtype]
    if v == 0:
        return mp.mpf(2) ** emin
    _, e = mp.frexp(abs(v))
    return mp.mpf(2) ** max(e - p, emin)


def _samples(dtype, beta, func, rng, n=150):
    fi = np.finfo(dtype)
    lo = math.log(float(fi.smallest_subnormal))
    hi = min(math.log(float(fi.max)), 710.0)
    parts = [rng.uniform(-40, 40, n), np.exp(rng.uniform(lo, hi, n // 2)) * rng.choice([-1, 1], n // 2),
             rng.uniform(-745 if dtype == "float64" else -104, -30, n // 4) / beta,
             math.log(2) / beta * (1 + rng.uniform(-0.4, 0.4, n // 2)),        # inverse's root band
             math.log(2) / beta * (1 + rng.uniform(-1e-9, 1e-9, n // 4))]      # and very near it
    with np.errstate(all="ignore"):
        x = np.concatenate(parts).astype(dtype)
    x = x[np.isfinite(x)]
    if func == "softplus_inverse":
        x = np.abs(x)
        x = x[x > 0]
    return x


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("func", ["softplus", "softplus_grad", "softplus_backward", "softplus_inverse"])
@pytest.mark.parametrize("beta", [1.0, 3.0, 0.1])
def test_sampled_vs_mpmath(dtype, func, beta):
    mp = pytest.importorskip("mpmath")
    if dtype == "float64" and not R.WIDE_FLOAT64:
        pytest.skip("np.longdouble is plain double here")
    mp.mp.prec = 200
    seed = ["float64", "float32"].index(dtype) * 100 + len(func) * 10 + int(beta * 10)
    rng = np.random.default_rng(seed)
    x = _samples(dtype, beta, func, rng)
    g = rng.standard_normal(x.size).astype(dtype)
    bq = float(np.dtype(dtype).type(beta))
    args = (g, x) if func == "softplus_backward" else (x,)
    got = R.evaluate(func, *args, beta=beta)
    bad = []
    for i in range(x.size):
        v = _mp_exact(mp, func, float(x[i]), bq, float(g[i]), dtype)
        err = abs(mp.mpf(float(got[i])) - v) / _mp_ulp(mp, v, dtype)
        if err > 0.6:
            bad.append(f"x={x[i]!r} g={g[i]!r}: got {got[i]!r}, exact {mp.nstr(v, 20)} ({float(err):.3f} ULP)")
    assert not bad, f"{len(bad)} of {x.size} beyond 0.6 ULP:\n" + "\n".join(bad[:10])


# --- special values, threshold semantics, exactness, warnings ---------------------------------

SPECIAL = [  # (x, softplus, grad, inverse) for beta = 1
    (math.nan, math.nan, math.nan, math.nan),
    (math.inf, math.inf, 1.0, math.inf),
    (-math.inf, 0.0, 0.0, math.nan),
    (-0.0, math.log(2), 0.5, math.nan),
    (0.0, math.log(2), 0.5, math.nan),
    (-1.0, 0.3132616875182228, 0.2689414213699951, math.nan),  # mpmath, rounded to float64
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threshold", [20.0, math.inf])
def test_special_values(dtype, threshold):
    x = np.array([row[0] for row in SPECIAL], dtype)
    for k, func in enumerate(["softplus", "softplus_grad", "softplus_inverse"], start=1):
        want = np.array([row[k] for row in SPECIAL], dtype)
        got = R.evaluate(func, x, threshold=threshold)
        np.testing.assert_array_equal(got, want, err_msg=func)
    # -inf -> +0.0 exactly (not -0.0), for any beta
    assert not np.signbit(R.evaluate("softplus", np.array([-np.inf], dtype), beta=3.0))[0]
    assert R.evaluate("softplus", np.array([-0.0], dtype), beta=4.0)[0] == np.dtype(dtype).type(math.log(2) / 4)


def test_threshold_is_tested_in_the_input_precision():
    # float32(1/3) = 0.333333343..., so 3*x = 1.00000003 exactly, but float32(3*x) == 1.0, which is
    # not > 1: PyTorch computes log1p(exp(z))/beta there, not x.
    x = np.float32(1 / 3)
    assert np.float32(3) * x == np.float32(1)
    got = R.evaluate("softplus", np.array([x]), beta=3.0, threshold=1.0)[0]
    assert got == np.float32(math.log1p(math.exp(3 * float(x))) / 3)
    # just above: the linear branch, x itself
    x2 = np.nextafter(x, np.float32(1))
    assert R.evaluate("softplus", np.array([x2]), beta=3.0, threshold=1.0)[0] == x2
    assert R.evaluate("softplus_grad", np.array([x2]), beta=3.0, threshold=1.0)[0] == 1
    # strict >: at the threshold itself the function is still computed
    t = np.array([20.0])
    assert R.evaluate("softplus", t, threshold=20.0)[0] == math.log1p(math.exp(20.0))
    t2 = np.nextafter(t, 21)
    assert R.evaluate("softplus", t2, threshold=20.0)[0] == t2[0]
    # the inverse applies the same test to beta*y
    assert R.evaluate("softplus_inverse", t2, threshold=20.0)[0] == t2[0]
    assert R.evaluate("softplus_inverse", t, threshold=20.0)[0] == math.log(math.expm1(20.0))


def test_threshold_rounded_to_the_input_precision():
    # threshold 0.1 is float32(0.1) = 0.100000001 for float32 input, as in PyTorch
    x = np.array([np.float32(0.1)])
    assert R.evaluate("softplus", x, threshold=0.1)[0] != x[0]  # float32(0.1) > float32(0.1) is False
    x64 = np.array([0.1000000005])
    assert R.evaluate("softplus", x64, threshold=0.1)[0] == x64[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exact_without_threshold_at_any_magnitude(dtype):
    fi = np.finfo(dtype)
    # beyond ~p*ln2 the correction exp(-x) is below half an ULP of x
    big = np.array([50.0, 100.0, 1000.0, 1e30, float(fi.max)], dtype)
    np.testing.assert_array_equal(R.evaluate("softplus", big), big)
    np.testing.assert_array_equal(R.evaluate("softplus_grad", big), np.ones_like(big))
    np.testing.assert_array_equal(R.evaluate("softplus_inverse", big), big)
    np.testing.assert_array_equal(R.evaluate("softplus", -big[2:]), np.zeros_like(big[2:]))
    np.testing.assert_array_equal(R.evaluate("softplus_grad", -big[2:]), np.zeros_like(big[2:]))
    assert R.evaluate("softplus", np.array([1000.0], dtype))[0] == 1000.0
    # small beta: softplus(x) = x + log1p(exp(-beta*x))/beta stays finite and >= x
    y = R.evaluate("softplus", big, beta=1e-30 if dtype == "float64" else 1e-20)
    assert np.all(np.isfinite(y)) and np.all(y >= big)


def test_no_floating_point_warnings():
    vals = np.concatenate([np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, 710.0, -746.0]),
                           np.linspace(-800, 800, 101)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            for dtype in ("float32", "float64"):
                with np.errstate(all="ignore"):
                    x = vals.astype(dtype)
                for func in ("softplus", "softplus_grad", "softplus_inverse"):
                    for beta in (1.0, 1e-3, 1e3):
                        R.evaluate(func, x, beta=beta, threshold=20.0)
                        R.evaluate(func, x, beta=beta)
                R.evaluate("softplus_backward", x[::-1], x)


def test_run_protocol_in_place_broadcast_and_strides():
    rng = np.random.default_rng(5)
    x = rng.uniform(-30, 30, (40, 50))
    want = R.evaluate("softplus", x)
    buf = x.copy()
    R.run("softplus", (buf,), buf, 1.0, math.inf, 1)  # in place
    np.testing.assert_array_equal(buf, want)
    out = np.empty((50, 40)).T  # F-ordered out
    R.run("softplus", (x[::-1],), out, 1.0, math.inf, 3)
    np.testing.assert_array_equal(out, want[::-1])
    g = np.array(2.0)  # broadcast grad_output
    out = np.empty_like(x)
    R.run("softplus_backward", (np.broadcast_to(g, x.shape), x), out, 1.0, 20.0, 1)
    np.testing.assert_array_equal(out, 2.0 * R.evaluate("softplus_grad", x, threshold=20.0))
    R.run("softplus", (x[:0],), np.empty((0, 50)), 1.0, 20.0, 1)  # zero size


def test_info_and_name():
    assert R.NAME == "numpy"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in R.info().items())
