#!/usr/bin/python3
"""Synthetic libraries of any size, for benchmarks (standard library only, fast enough for
10 M records):

  compounds  valid drug-like SMILES built from ring cores, linkers and substituents
  proteins   FASTA with log-normal lengths around 350 residues (tail to 35,000) and natural
             residue frequencies

  tools/gen_library.py compounds 1000000 > lib.smi
  tools/gen_library.py proteins 100000 > prot.fa
"""
import math
import random
import sys

# {a} and {b} are branches on atoms that have a hydrogen to spare; substituent rings use
# ring-closure digit 9 so they never clash with a core's open rings.
CORES = ["c1ccc{a}cc1{b}", "c1cc{a}ncc1{b}", "c1ccc2[nH]c{a}cc2c1{b}", "C1CC{a}N(CC1){b}", "c1cc{a}sc1{b}",
         "C1C{a}C(CCO1){b}", "c1nc{a}nc{b}c1", "N1C(=O)NC(=O)C1{a}{b}", "c1cc{a}oc1{b}", "C1CN(CCN1{a}){b}",
         "c1ccc(cc1)C(=O)N{a}{b}", "c1ccc2ncc{a}cc2c1{b}"]
SUBST = ["", "C", "CC", "OC", "F", "Cl", "Br", "C(F)(F)F", "N", "N(C)C", "C(=O)O", "C(=O)N", "C(=O)NC", "S(=O)(=O)N",
         "C#N", "[N+](=O)[O-]", "OCC", "CO", "C(C)C", "c9ccccc9", "c9ccncc9", "CN9CCOCC9", "C(=O)OC", "NC(=O)C",
         "C9CC9", "OC(F)(F)F", "c9ccc(F)cc9", "CCN(C)C", "[C@@H](C)N", "/C=C/C(=O)O"]
AA = "ACDEFGHIKLMNPQRSTVWY"
AA_FREQ = [8.25, 1.37, 5.45, 6.75, 3.86, 7.07, 2.27, 5.96, 5.84, 9.66, 2.42, 4.06, 4.70, 3.93, 5.53, 6.56, 5.34, 6.87, 1.08, 2.92]


def compounds(n, rng):
    for i in range(n):
        def branch():
            s = rng.choice(SUBST)
            return f"({s})" if s else ""
        a, b = branch(), branch()
        smi = rng.choice(CORES).format(a=a, b=b)
        if not b and rng.random() < 0.4:  # a second ring system through a linker on the free end
            smi += rng.choice(["C", "CC", "OC", "NC(=O)", "S(=O)(=O)"]) + rng.choice(CORES).format(a=branch(), b="")
        yield f"{smi} GEN{i:010d}"


def proteins(n, rng):
    for i in range(n):
        length = int(min(35000, max(20, rng.lognormvariate(math.log(350), 0.65))))
        seq = "".join(rng.choices(AA, weights=AA_FREQ, k=length))
        yield f">GEN{i:010d} synthetic length {length}\n" + "\n".join(seq[k:k + 60] for k in range(0, length, 60))


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("compounds", "proteins"):
        raise SystemExit(__doc__)
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    gen = compounds if sys.argv[1] == "compounds" else proteins
    out = sys.stdout
    for line in gen(int(sys.argv[2]), rng):
        out.write(line + "\n")


if __name__ == "__main__":
    main()
