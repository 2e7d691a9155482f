#!/usr/bin/env perl
# Banned calls in C sources (comments and string literals ignored):
#   strcpy strcat sprintf vsprintf gets atoi atol system popen  (unbounded or shell-parsing)
#   open/openat without O_CLOEXEC                               (fds must not leak into tasks)
# Prints file:line: reason for each finding; exit status 1 when there is any.
use strict;
use warnings;

my @banned = qw(strcpy strcat sprintf vsprintf gets atoi atol system popen);
my $banned_re = join('|', @banned);
my $found = 0;

for my $file (@ARGV) {
	open(my $fh, '<', $file) or die "$file: $!\n";
	local $/;
	my $src = <$fh>;
	close($fh);
	# Blank out comments, string and character literals, keeping newlines so lines still count.
	$src =~ s{(/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')}{
		my $m = $1; (my $k = $m) =~ s/[^\n]/ /g;
		$m =~ /^"/ ? '""' . substr($k, 2) : $k }gse;
	while ($src =~ /(?<![\w.>])($banned_re)\s*\(/g) {
		my $line = 1 + (substr($src, 0, $-[0]) =~ tr/\n//);
		print "$file:$line: $1() is banned\n";
		$found++;
	}
	while ($src =~ /(?<![\w.>])(open|openat|open64)\s*\(/g) {
		my ($name, $start) = ($1, $+[0]);
		my $line = 1 + (substr($src, 0, $-[0]) =~ tr/\n//);
		my ($depth, $i) = (1, $start);
		$depth += (substr($src, $i, 1) eq '(') - (substr($src, $i, 1) eq ')'), $i++
			while $depth > 0 && $i < length($src);
		my $args = substr($src, $start, $i - $start);
		next if $args =~ /O_CLOEXEC/;
		print "$file:$line: $name() without O_CLOEXEC\n";
		$found++;
	}
}
exit($found ? 1 : 0);
